//! The function's code: templates/lambda/stop_shop.py in a zip of one
//! stored file with a fixed timestamp, so the same handler always has the
//! same CodeSha256 and re-applies are no-ops.

pub(super) const HANDLER: &str = include_str!("../../../templates/lambda/stop_shop.py");
/// The file's name inside the zip; the function's handler is `<stem>.handler`.
const NAME: &[u8] = b"stop_shop.py";

/// The deterministic zip of [`HANDLER`].
pub fn handler_zip() -> Vec<u8> {
    let data = HANDLER.as_bytes();
    let crc = crc32fast::hash(data);
    let (size, nlen) = (data.len() as u32, NAME.len() as u16);
    // 1980-01-01 00:00 in DOS time: the zip epoch.
    let (time, date) = (0u16, (1u16 << 5) | 1);
    let mut z = Vec::with_capacity(data.len() + 128);
    let header = |z: &mut Vec<u8>, central: bool| {
        if central {
            z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            z.extend_from_slice(&(0x0300u16 | 20).to_le_bytes()); // made by: unix
        } else {
            z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        }
        z.extend_from_slice(&20u16.to_le_bytes()); // version needed
        z.extend_from_slice(&0u16.to_le_bytes()); // flags
        z.extend_from_slice(&0u16.to_le_bytes()); // stored
        z.extend_from_slice(&time.to_le_bytes());
        z.extend_from_slice(&date.to_le_bytes());
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&size.to_le_bytes());
        z.extend_from_slice(&size.to_le_bytes());
        z.extend_from_slice(&nlen.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes()); // extra
        if central {
            z.extend_from_slice(&0u16.to_le_bytes()); // comment
            z.extend_from_slice(&0u16.to_le_bytes()); // disk
            z.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
            z.extend_from_slice(&((0o100644u32) << 16).to_le_bytes()); // -rw-r--r--
            z.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        }
        z.extend_from_slice(NAME);
    };
    header(&mut z, false);
    z.extend_from_slice(data);
    let cd_start = z.len() as u32;
    header(&mut z, true);
    let cd_len = z.len() as u32 - cd_start;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0]); // disk numbers
    z.extend_from_slice(&1u16.to_le_bytes());
    z.extend_from_slice(&1u16.to_le_bytes());
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_start.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// What Lambda reports as CodeSha256: base64 of the zip's SHA-256.
pub(super) fn code_sha256(zip: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Python's own zipfile reads the zip back: one stored member, its
    /// bytes those of the template on disk, its CRC checked on read and
    /// equal to zlib's, its mode and date as Lambda will unpack them.
    #[test]
    fn python_unzips_the_handler_to_the_template_with_a_matching_crc() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("handler.zip");
        std::fs::write(&zip, handler_zip()).unwrap();
        let template = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/lambda/stop_shop.py");
        let script = r#"
import json, sys, zipfile, zlib
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
want = open(sys.argv[2], "rb").read()
i = z.infolist()[0]
print(json.dumps({
    "names": z.namelist(),
    "bad": bad,
    "same": z.read(i) == want,
    "crc": i.CRC,
    "zlib_crc": zlib.crc32(want),
    "stored": i.compress_type == zipfile.ZIP_STORED,
    "mode": oct(i.external_attr >> 16),
    "date": list(i.date_time),
}))
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&zip)
            .arg(template)
            .output()
            .expect("python3 (installed with the test tools) runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["names"], serde_json::json!(["stop_shop.py"]), "{v}");
        assert_eq!(v["bad"], serde_json::Value::Null, "CRC mismatch: {v}");
        assert_eq!(v["same"], true, "{v}");
        assert_eq!(v["crc"], v["zlib_crc"], "{v}");
        assert_eq!(v["stored"], true, "{v}");
        assert_eq!(v["mode"], "0o100644", "{v}");
        assert_eq!(v["date"], serde_json::json!([1980, 1, 1, 0, 0, 0]), "{v}");
    }
}
