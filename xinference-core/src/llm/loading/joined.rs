//! Pieces of bytes read one after another as one seekable file: the parts of a split GGUF
//! (`split.rs`) and the segments of a safetensors checkpoint's GGUF view
//! (`safetensors/gguf_view.rs`) both hand the GGUF reader such a file.

use std::io::{Read, Seek, SeekFrom};

/// Where the pieces' bytes come from.
pub(super) trait Pieces {
    /// Reads into `buf` from byte `within` of piece `index`, at most to that piece's end;
    /// returns how many bytes were read.
    fn read_piece(&mut self, index: usize, within: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

/// The pieces laid end to end.
pub(super) struct Joined<P> {
    pieces: P,
    /// Where each piece starts in the whole.
    starts: Vec<u64>,
    len: u64,
    pos: u64,
}

impl<P: Pieces> Joined<P> {
    /// Joins `pieces`, whose lengths in order are `lens`.
    pub(super) fn new(pieces: P, lens: impl IntoIterator<Item = u64>) -> Self {
        let mut starts = Vec::new();
        let mut len = 0u64;
        for piece_len in lens {
            starts.push(len);
            len += piece_len;
        }
        Self {
            pieces,
            starts,
            len,
            pos: 0,
        }
    }
}

impl<P: Pieces> Read for Joined<P> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let i = self.starts.partition_point(|&s| s <= self.pos) - 1;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.len);
        let want = buf.len().min((end - self.pos) as usize);
        let n = self
            .pieces
            .read_piece(i, self.pos - self.starts[i], &mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<P> Seek for Joined<P> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slices(Vec<Vec<u8>>);

    impl Pieces for Slices {
        fn read_piece(&mut self, i: usize, within: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let piece = &self.0[i][within as usize..];
            let n = buf.len().min(piece.len());
            buf[..n].copy_from_slice(&piece[..n]);
            Ok(n)
        }
    }

    #[test]
    fn pieces_read_and_seek_as_one_stream() {
        let pieces = vec![b"abc".to_vec(), Vec::new(), b"defg".to_vec()];
        let lens: Vec<u64> = pieces.iter().map(|p| p.len() as u64).collect();
        let mut joined = Joined::new(Slices(pieces), lens);
        let mut all = String::new();
        joined.read_to_string(&mut all).unwrap();
        assert_eq!(all, "abcdefg");
        joined.seek(SeekFrom::Start(2)).unwrap();
        let mut two = [0u8; 2];
        joined.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"cd");
        joined.seek(SeekFrom::End(-1)).unwrap();
        joined.read_exact(&mut two[..1]).unwrap();
        assert_eq!(two[0], b'g');
        assert!(joined.seek(SeekFrom::Current(-10)).is_err());
    }
}
