//! gRPC request bodies as they go on the wire, for h2load's `-d`: a
//! length-prefixed message (one byte "not compressed", four bytes of
//! big-endian length, then the protobuf bytes).

/// `message` as one uncompressed gRPC frame.
pub fn frame(message: &impl prost::Message) -> Vec<u8> {
    let len = message.encoded_len();
    let mut body = Vec::with_capacity(5 + len);
    body.push(0);
    body.extend_from_slice(&(len as u32).to_be_bytes());
    message
        .encode(&mut body)
        .expect("a Vec grows to fit any message");
    body
}

/// The message in a body made by [`frame`]: exactly one uncompressed frame
/// (how the tests check the encoding).
#[cfg(test)]
pub fn unframe<M: prost::Message + Default>(body: &[u8]) -> anyhow::Result<M> {
    use anyhow::ensure;
    ensure!(body.len() >= 5, "a gRPC frame has a 5-byte prefix");
    ensure!(body[0] == 0, "the frame is marked compressed");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    ensure!(
        body.len() == 5 + len,
        "the prefix says {len} bytes, the frame has {}",
        body.len() - 5
    );
    Ok(M::decode(&body[5..])?)
}

/// The echo server's message (`roster-echo`): `bytes payload = 1`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Echo {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::{Echo, frame, unframe};
    use roster_proto::v1::{GetUserRequest, UserIdentifiers};

    #[test]
    fn a_framed_request_decodes_back() {
        let request = GetUserRequest {
            user_ids: Some(UserIdentifiers {
                user_id: "user-000042".into(),
                email: String::new(),
            }),
            field_mask: None,
        };
        let body = frame(&request);
        // The prefix: uncompressed, then the protobuf length big-endian.
        assert_eq!(body[0], 0);
        assert_eq!(
            u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize,
            body.len() - 5
        );
        assert_eq!(unframe::<GetUserRequest>(&body).unwrap(), request);
    }

    #[test]
    fn a_truncated_or_compressed_frame_is_refused() {
        let body = frame(&Echo {
            payload: b"ping".to_vec(),
        });
        let err = unframe::<Echo>(&body[..body.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("the prefix says"), "{err}");
        let mut compressed = body.clone();
        compressed[0] = 1;
        let err = unframe::<Echo>(&compressed).unwrap_err();
        assert!(err.to_string().contains("compressed"), "{err}");
    }
}
