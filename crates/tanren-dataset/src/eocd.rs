//! The entry count a zip declares, read from its end-of-central-directory record (APPNOTE 4.3.14-16)
//! at the file's tail. The zip crate parses the whole central directory into memory when it opens an
//! archive, one record per declared entry, so the count is checked here first: a refusal then costs
//! one read of at most 64 KiB whatever the upload claims.

use std::io::{self, Read, Seek, SeekFrom};

const EOCD_SIG: &[u8] = b"PK\x05\x06";
const EOCD_LEN: usize = 22;
const LOCATOR_SIG: &[u8] = b"PK\x06\x07";
const LOCATOR_LEN: usize = 20;
const EOCD64_SIG: &[u8] = b"PK\x06\x06";
const EOCD64_LEN: usize = 56;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What the end records say about the central directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Declared {
    /// Entries declared (the larger of "on this disk" and "in total", as readers differ on which
    /// they trust).
    Entries(u64),
    /// No end-of-central-directory record in the last 64 KiB: not a zip. The zip crate's own error
    /// says so in its words.
    NoEndRecord,
    /// The record says zip64 and its locator points somewhere without a zip64 end record.
    BadZip64(String),
}

/// Read the declared entry count from the tail of `r`.
pub(crate) fn declared_entries<R: Read + Seek>(r: &mut R) -> io::Result<Declared> {
    let len = r.seek(SeekFrom::End(0))?;
    // The record, its comment (at most u16::MAX bytes), and room for a zip64 locator before it.
    let tail_len = len.min((LOCATOR_LEN + EOCD_LEN + usize::from(u16::MAX)) as u64);
    let tail_start = len - tail_len;
    r.seek(SeekFrom::Start(tail_start))?;
    let mut tail = vec![0; tail_len as usize];
    r.read_exact(&mut tail)?;
    if tail.len() < EOCD_LEN {
        return Ok(Declared::NoEndRecord);
    }
    // The last signature whose record and comment fit in the file: the one the zip crate tries first.
    let found = (0..=tail.len() - EOCD_LEN).rev().find(|&i| {
        &tail[i..i + 4] == EOCD_SIG && i + EOCD_LEN + usize::from(u16_at(&tail, i + 20)) <= tail.len()
    });
    let Some(at) = found else {
        return Ok(Declared::NoEndRecord);
    };
    let entries = u16_at(&tail, at + 8).max(u16_at(&tail, at + 10));
    let saturated =
        entries == u16::MAX || u32_at(&tail, at + 12) == u32::MAX || u32_at(&tail, at + 16) == u32::MAX;
    // Without a locator right before the record, readers take the 16-bit count as it is.
    if !saturated || at < LOCATOR_LEN || &tail[at - LOCATOR_LEN..at - LOCATOR_LEN + 4] != LOCATOR_SIG {
        return Ok(Declared::Entries(entries.into()));
    }
    let eocd64_at = u64_at(&tail, at - LOCATOR_LEN + 8);
    let bad = |why: &str| Ok(Declared::BadZip64(format!("zip64 end record {why}")));
    if eocd64_at.saturating_add(EOCD64_LEN as u64) > tail_start + (at - LOCATOR_LEN) as u64 {
        return bad("points past its own locator");
    }
    let mut rec = [0u8; EOCD64_LEN];
    r.seek(SeekFrom::Start(eocd64_at))?;
    r.read_exact(&mut rec)?;
    if &rec[..4] != EOCD64_SIG {
        return bad("not found where its locator points");
    }
    Ok(Declared::Entries(u64_at(&rec, 24).max(u64_at(&rec, 32))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn eocd(entries: u16, comment: &[u8]) -> Vec<u8> {
        let mut b = EOCD_SIG.to_vec();
        b.extend_from_slice(&[0; 4]); // disk numbers
        b.extend_from_slice(&entries.to_le_bytes());
        b.extend_from_slice(&entries.to_le_bytes());
        b.extend_from_slice(&[0; 8]); // directory size and offset
        b.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        b.extend_from_slice(comment);
        b
    }

    fn read(bytes: Vec<u8>) -> Declared {
        declared_entries(&mut Cursor::new(bytes)).expect("io")
    }

    #[test]
    fn zip32_counts_comments_and_junk() {
        assert_eq!(read(eocd(7, b"")), Declared::Entries(7));
        // A comment that holds a record whose own comment would run past the end: not that one.
        let mut fake = eocd(9, b"");
        fake[20] = 5;
        assert_eq!(read(eocd(3, &fake)), Declared::Entries(3));
        let mut junk = vec![0u8; 100_000];
        junk.extend(eocd(5, b"hello"));
        assert_eq!(read(junk), Declared::Entries(5));
        assert_eq!(read(b"PK\x05\x06short".to_vec()), Declared::NoEndRecord);
        assert_eq!(read(vec![0; 70_000]), Declared::NoEndRecord);
        // Saturated without a locator: the 16-bit count stands.
        assert_eq!(read(eocd(u16::MAX, b"")), Declared::Entries(65535));
    }

    #[test]
    fn zip64_record_is_followed() {
        let mut b = vec![0u8; 10];
        let at = b.len() as u64;
        b.extend_from_slice(EOCD64_SIG);
        b.extend_from_slice(&44u64.to_le_bytes()); // size of the rest of the record
        b.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // versions, disk numbers
        b.extend_from_slice(&1_000_000u64.to_le_bytes());
        b.extend_from_slice(&3_000_000u64.to_le_bytes());
        b.extend_from_slice(&[0; 16]); // directory size and offset
        let with_locator = |target: u64| {
            let mut b = b.clone();
            b.extend_from_slice(LOCATOR_SIG);
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&target.to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend(eocd(u16::MAX, b""));
            b
        };
        assert_eq!(read(with_locator(at)), Declared::Entries(3_000_000));
        assert!(matches!(read(with_locator(at + 1)), Declared::BadZip64(_)));
        assert!(matches!(read(with_locator(1 << 40)), Declared::BadZip64(_)));
    }
}
