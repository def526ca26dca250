//! JSON written straight into a byte buffer, for the one body big enough for its serialisation to show: the task
//! list of `GET /api/projects/:id/tasks` (about 17 KB for 50 tasks).
//!
//! Why not serde_json there: its string escaper looks up every byte in a table (~9 instructions a byte under
//! callgrind), and every key is escaped and written like a value; the list took ~207,000 instructions of the
//! ~790,000 the whole request costs the server. Here keys are pre-written literals, and strings are scanned eight
//! bytes at a time for the three things JSON must escape.
//!
//! The output must stay byte-identical to serde_json's (every other body, and the JSON store's responses, are
//! serde_json's): the same escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as
//! `\u00xx` in lower-case hex, nothing else escaped). The tests compare the two on random strings, and
//! `dto::tests` compares whole task lists.

/// Appends `s` as a JSON string literal (quotes included), escaped as serde_json escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if any_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        // The usual case (ids, dates, plain text): one copy.
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Whether any byte of `bytes` needs an escape, eight bytes a step; the last step overlaps the one before rather
/// than going bytewise through the tail.
#[inline]
fn any_escape(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| ESCAPE[b as usize] != 0);
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    let mut at = 0;
    while at + 8 < bytes.len() {
        if needs_escape(word(at)) {
            return true;
        }
        at += 8;
    }
    needs_escape(word(bytes.len() - 8))
}

fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0; // first byte not yet copied
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape != 0 {
            out.extend_from_slice(&bytes[start..i]);
            write_escape(out, b, escape);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `s` as a string, or `null`.
pub fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Whether any of the eight bytes of `w` is a control character (below 0x20), `"` or `\`. Exact as a yes/no (the
/// classic "has a byte less than n" and "has a zero byte" bit tricks); which byte it is, the caller finds bytewise.
#[inline]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let s = w ^ (ONES * b'\\' as u64);
    let backslash = s.wrapping_sub(ONES) & !s;
    (control | quote | backslash) & HIGH != 0
}

const BB: u8 = b'b';
const TT: u8 = b't';
const NN: u8 = b'n';
const FF: u8 = b'f';
const RR: u8 = b'r';
const QU: u8 = b'"';
const BS: u8 = b'\\';
const UU: u8 = b'u';
const __: u8 = 0;

/// serde_json's table: for each byte, 0 when it is written as is, else the letter after the backslash.
static ESCAPE: [u8; 256] = [
    //   1   2   3   4   5   6   7   8   9   A   B   C   D   E   F
    UU, UU, UU, UU, UU, UU, UU, UU, BB, TT, NN, UU, FF, RR, UU, UU, // 0
    UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, UU, // 1
    __, __, QU, __, __, __, __, __, __, __, __, __, __, __, __, __, // 2
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // 3
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // 4
    __, __, __, __, __, __, __, __, __, __, __, __, BS, __, __, __, // 5
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // 6
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // 7
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // 8
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // 9
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // A
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // B
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // C
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // D
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // E
    __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, // F
];

fn write_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    if escape == UU {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(byte >> 4) as usize], HEX[(byte & 0xf) as usize]]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).expect("valid UTF-8")
    }

    #[test]
    fn every_single_character_is_escaped_as_serde_json_does() {
        for c in (0u32..0x800).chain([0xfffd, 0x10000, 0x10ffff]).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn random_strings_are_escaped_as_serde_json_does() {
        // Biased towards what needs escaping, at every offset of the eight-byte steps.
        const PIECES: &[&str] =
            &["a", "Z", "0", " ", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é", "€", "𝄞", "/", "abcdefgh"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let n = rng.random_range(0..40);
            let s: String = (0..n).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
        assert_eq!(ours(""), "\"\"");
    }

    #[test]
    fn a_byte_that_needs_an_escape_is_found_at_every_position_of_every_length() {
        for len in 1..=33 {
            for pos in 0..len {
                for special in ["\"", "\\", "\n", "\u{0}", "\u{1f}"] {
                    let s: String = (0..len).map(|i| if i == pos { special } else { "x" }).collect();
                    assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn the_word_check_finds_each_byte_that_needs_an_escape_at_each_position() {
        for b in 0u8..=255 {
            for pos in 0..8 {
                let mut w = [b'a'; 8];
                w[pos] = b;
                assert_eq!(needs_escape(u64::from_le_bytes(w)), ESCAPE[b as usize] != 0, "byte {b:#x} at {pos}");
            }
        }
    }
}
