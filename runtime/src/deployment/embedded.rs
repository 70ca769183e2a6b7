//! [`EMBEDDED_DEFAULT_TOML`]: the deployment used when no file is given.

/// The embedded default deployment: two CFT RSMs, "alpha" and "beta", of 4 replicas each
/// (f = 1) on loopback TCP (ports 27100–27103 and 27200–27203), Picsou, both RSMs sending
/// 100,000 messages of 100 B. Its secret is public: for local runs only.
/// `examples/local-4x4-tcp.toml` is the same deployment with every setting explained.
pub const EMBEDDED_DEFAULT_TOML: &str = r#"# Embedded default deployment: two RSMs of 4 replicas on loopback TCP.
strategy = "picsou"

[[rsm]]
name = "alpha"
fault = "cft"
f = 1
replicas = [
  { id = 0, address = "127.0.0.1:27100" },
  { id = 1, address = "127.0.0.1:27101" },
  { id = 2, address = "127.0.0.1:27102" },
  { id = 3, address = "127.0.0.1:27103" },
]

[[rsm]]
name = "beta"
fault = "cft"
f = 1
replicas = [
  { id = 0, address = "127.0.0.1:27200" },
  { id = 1, address = "127.0.0.1:27201" },
  { id = 2, address = "127.0.0.1:27202" },
  { id = 3, address = "127.0.0.1:27203" },
]

[transport]
kind = "tcp"

[keys]
# Public (it is in the source code): for local runs only.
secret = "706963736f7520656d6265646465642064656d6f206b65793a207075626c6963"

[load]
messages = 100000
size = 100
senders = "both"
"#;
