from data2vec.decoders.conv import ConvDecoder, decoder_input

__all__ = ["ConvDecoder", "decoder_input"]
