//! The protobuf codec of the generated CRI services (see build.rs).
//!
//! It encodes like `tonic_prost::ProstCodec`; the difference is the answer to
//! a request that does not decode (invalid UTF-8 in a string field, a field
//! sent with the wrong wire type, a truncated message). tonic answers those
//! with INTERNAL, which reads as a fault of ours; the fault is the caller's,
//! so they get INVALID_ARGUMENT with prost's explanation (it names the
//! message and field).

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;

pub struct CriCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for CriCodec<T, U> {
    fn default() -> Self {
        CriCodec(PhantomData)
    }
}

impl<T, U> Codec for CriCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = CriDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CriDecoder(PhantomData)
    }
}

pub struct CriDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for CriDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
