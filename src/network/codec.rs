//! Request-response codec shared by every `/brainmesh/*` protocol: one length-prefixed (u32, big-endian) blob
//! each way, with hard size limits so a peer cannot make us allocate or read without bound.
//! Decoding the blob (JSON) is the actors' job, so malformed content is counted there.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use brainmesh_actors::Proto;

/// Length-prefixed blobs with per-direction limits (from [`Proto::limits`]).
#[derive(Debug, Clone, Copy)]
pub struct BytesCodec {
    pub max_request: usize,
    pub max_response: usize,
}

impl BytesCodec {
    /// The codec of one protocol, with that protocol's limits.
    pub fn for_proto(p: Proto) -> Self {
        let (max_request, max_response) = p.limits();
        Self { max_request, max_response }
    }
}

/// The libp2p protocol id of one of our request-response protocols.
pub fn protocol_id(p: Proto) -> StreamProtocol {
    StreamProtocol::new(p.id())
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {limit}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8], limit: usize) -> io::Result<()> {
    if data.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds the {limit}-byte limit", data.len()),
        ));
    }
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

impl libp2p::request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &req, self.max_request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &res, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused_before_allocation() {
        futures::executor::block_on(async {
            let mut buf = Cursor::new(Vec::new());
            write_frame(&mut buf, b"hello", 16).await.unwrap();
            let mut r = Cursor::new(buf.into_inner());
            assert_eq!(read_frame(&mut r, 16).await.unwrap(), b"hello");
            // A header claiming 4 GiB is refused without reading further.
            let mut r = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
            let err = read_frame(&mut r, 16).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        });
    }
}
