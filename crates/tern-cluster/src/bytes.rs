//! Reading and writing the little-endian fields of the cluster's own formats (pure): one reader
//! for the client protocol, the container snapshot and the example service's snapshot.

/// Reads fields from the front of `bytes`; every read past the end is an error naming `what`.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of `what` (for errors: "a message", "the container snapshot") from `at`.
    pub(crate) fn new(bytes: &'a [u8], at: usize, what: &'static str) -> Self {
        Self { bytes, at, what }
    }

    /// The next `length` bytes.
    pub(crate) fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{} of {} bytes is cut short at byte {}",
                    self.what,
                    self.bytes.len(),
                    self.at
                )
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, String> {
        Ok(self.u32()? as i32)
    }

    /// A field of a u32 length and that many bytes, at most `limit`.
    pub(crate) fn bytes(&mut self, limit: usize) -> Result<&'a [u8], String> {
        let length = self.u32()? as usize;
        if length > limit {
            return Err(format!("a field of {length} bytes (at most {limit})"));
        }
        self.take(length)
    }

    /// A [`Self::bytes`] field that is UTF-8.
    pub(crate) fn text(&mut self, limit: usize) -> Result<String, String> {
        String::from_utf8(self.bytes(limit)?.to_vec())
            .map_err(|_| format!("{}: a text field is not UTF-8", self.what))
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    /// Whether nothing is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// An error when anything is left.
    pub(crate) fn end(&self) -> Result<(), String> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes after the end of {}",
                self.bytes.len() - self.at,
                self.what
            ))
        }
    }
}

/// Append a u32 length and `bytes`.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}
