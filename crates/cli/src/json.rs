//! Protobuf messages to and from JSON, following the proto3 JSON mapping
//! (lowerCamelCase names, RFC 3339 timestamps, enums by name, 64-bit
//! integers as strings), through the contract's own file descriptor set:
//! the same source of truth as the generated types, and no serde code in
//! the server's build.

use std::io::Read as _;
use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use crate::error::{CliError, Result};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(roster_proto::FILE_DESCRIPTOR_SET)
        .expect("the contract's descriptor set is built into the binary and decodes")
});

fn descriptor<M: Name>() -> Result<MessageDescriptor> {
    let name = M::full_name();
    POOL.get_message_by_name(&name)
        .ok_or_else(|| anyhow::anyhow!("the contract has no message `{name}`").into())
}

/// `message` as canonical proto3 JSON; fields at their default are left out.
pub fn to_json<M: Message + Name>(message: &M) -> Result<Value> {
    encode(message, true)
}

/// `message` as proto3 JSON with every field, defaults included: what
/// tables are drawn from, so a state at its default shows its name.
pub fn to_full_json<M: Message + Name>(message: &M) -> Result<Value> {
    encode(message, false)
}

fn encode<M: Message + Name>(message: &M, skip_defaults: bool) -> Result<Value> {
    let dynamic = DynamicMessage::decode(descriptor::<M>()?, message.encode_to_vec().as_slice())
        .map_err(|e| anyhow::anyhow!("re-read a {}: {e}", M::full_name()))?;
    let options = SerializeOptions::new().skip_default_fields(skip_defaults);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| anyhow::anyhow!("encode a {} as JSON: {e}", M::full_name()).into())
}

/// A message from its proto3 JSON form; `source` names where the text
/// came from in errors, which name the offending field.
pub fn from_json<M: Message + Name + Default>(text: &str, source: &str) -> Result<M> {
    let mut json = serde_json::Deserializer::from_str(text);
    // The tracked path (`rights[1]`, `user.state`) names the field in errors.
    let mut track = serde_path_to_error::Track::new();
    let dynamic = DynamicMessage::deserialize(
        descriptor::<M>()?,
        serde_path_to_error::Deserializer::new(&mut json, &mut track),
    )
    .map_err(|e| format!("field `{}`: {e}", track.path()))
    .and_then(|message| json.end().map(|()| message).map_err(|e| e.to_string()))
    .map_err(|e| CliError::invalid(format!("{source}: not a valid {}: {e}", M::full_name())))?;
    dynamic
        .transcode_to::<M>()
        .map_err(|e| CliError::invalid(format!("{source}: {e}")))
}

/// The message in the file `path` (`-` for standard input).
pub fn read_message<M: Message + Name + Default>(path: &str) -> Result<M> {
    let text = read_input(path)?;
    from_json(&text, if path == "-" { "standard input" } else { path })
}

/// The whole of a file, or of standard input for `-`.
pub fn read_input(path: &str) -> Result<String> {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::invalid(format!("read standard input: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| CliError::invalid(format!("read {path}: {e}")))?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_proto::v1::{Right, User, UserIdentifiers};

    #[test]
    fn a_user_is_written_with_the_canonical_json_mapping() {
        let user = User {
            ids: Some(UserIdentifiers {
                user_id: "alice".into(),
                email: String::new(),
            }),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            primary_email_address: "alice@example.com".into(),
            state: 1,
            admin: true,
            ..User::default()
        };
        let json = to_json(&user).unwrap();
        assert_eq!(json["ids"]["userId"], "alice");
        assert_eq!(json["createdAt"], "2023-11-14T22:13:20Z");
        assert_eq!(json["primaryEmailAddress"], "alice@example.com");
        assert_eq!(json["state"], "STATE_APPROVED");
        assert_eq!(json["admin"], true);
        assert!(json.get("name").is_none(), "defaults are left out: {json}");
    }

    #[test]
    fn json_input_names_the_field_it_cannot_read() {
        let err = from_json::<roster_proto::v1::CreateUserApiKeyRequest>(
            r#"{"name":"ci","rights":["RIGHT_NOPE"]}"#,
            "key.json",
        )
        .unwrap_err();
        assert!(err.to_string().contains("RIGHT_NOPE"), "{err}");
        assert!(err.to_string().contains("field `rights[0]`"), "{err}");
        let ok = from_json::<roster_proto::v1::CreateUserApiKeyRequest>(
            r#"{"userIds":{"userId":"bob"},"rights":["RIGHT_USER_INFO"]}"#,
            "key.json",
        )
        .unwrap();
        assert_eq!(ok.rights, vec![Right::UserInfo as i32]);
        assert_eq!(ok.user_ids.unwrap().user_id, "bob");
    }
}
