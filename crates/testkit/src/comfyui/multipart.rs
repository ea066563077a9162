//! Just enough `multipart/form-data` for `/upload/image`: named parts, an optional
//! file name, the raw bytes. No streaming, no nested multiparts.

use axum::body::Bytes;

pub(super) struct Part {
    pub(super) name: String,
    pub(super) filename: Option<String>,
    pub(super) data: Bytes,
}

/// The parts of `body`, or None when it is not a multipart form.
pub(super) fn parse(content_type: &str, body: &Bytes) -> Option<Vec<Part>> {
    if !content_type.starts_with("multipart/form-data") {
        return None;
    }
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body.slice(find(body, delimiter.as_bytes())? + delimiter.len()..);
    loop {
        // After a delimiter: `--` ends the form, otherwise CRLF and a part.
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        let start = if rest.starts_with(b"\r\n") { 2 } else { 0 };
        let end = find(&rest, delimiter.as_bytes())?;
        let part = rest.slice(start..end);
        let headers_end = find(&part, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&part[..headers_end]).ok()?;
        let data = part.slice(headers_end + 4..);
        let data = data.slice(..data.len() - usize::from(data.ends_with(b"\r\n")) * 2);
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
        parts.push(Part {
            name: param(disposition, "name")?,
            filename: param(disposition, "filename"),
            data,
        });
        rest = rest.slice(end + delimiter.len()..);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `key="value"` from a Content-Disposition line.
fn param(line: &str, key: &str) -> Option<String> {
    line.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k == key).then(|| v.trim_matches('"').to_string())
    })
}
