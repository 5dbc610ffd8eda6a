//! A byte-level pushdown matcher for a compiled [`Grammar`]: it says which bytes may come next
//! and advances over the bytes of each chosen token. Alternatives (`anyOf`, `enum`, the branches
//! of "any value") are followed side by side as separate stacks, so no choice is made before
//! the bytes decide it.
//!
//! JSON is written compactly or lightly indented: at most [`MAX_WS`] whitespace bytes in a row
//! between tokens, numbers of at most [`MAX_NUMBER_BYTES`] bytes.

use super::schema::{Grammar, Node, NodeId};

/// Whitespace bytes allowed in a row between JSON tokens.
pub const MAX_WS: u8 = 8;
/// Longest number written.
pub const MAX_NUMBER_BYTES: u8 = 24;
/// Alternative stacks followed at once (a schema with more live branches is cut to these).
const MAX_STACKS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lit {
    /// `Node::Literal(bytes)`.
    Node(NodeId),
    /// The JSON-encoded key of field `.1` of object node `.0`.
    Key(NodeId, u16),
    True,
    False,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    Normal,
    Escape,
    /// Hex digits of a `\u` escape still expected.
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn accepting(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjSt {
    Open,
    /// Free objects: the first key or `}`.
    FirstKey,
    Key,
    Colon,
    Val,
    Next,
    /// Fixed objects without fields: `}`.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrSt {
    Open,
    First,
    Item,
    Next,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Value(NodeId),
    Lit { lit: Lit, pos: u16 },
    Str(Str),
    Num { st: Num, integer: bool, len: u8 },
    Obj { node: NodeId, field: u16, st: ObjSt },
    AnyObj(ObjSt),
    Arr { node: NodeId, count: u32, st: ArrSt },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stack {
    frames: Vec<Frame>,
    ws: u8,
}

/// Where a generation stands in the grammar.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher<'g> {
    g: &'g Grammar,
    stacks: Vec<Stack>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

impl Frame {
    fn takes_ws(&self) -> bool {
        match self {
            Frame::Value(_) => true,
            Frame::Obj { st, .. } | Frame::AnyObj(st) => *st != ObjSt::Open,
            Frame::Arr { st, .. } => *st != ArrSt::Open,
            _ => false,
        }
    }
}

impl<'g> Matcher<'g> {
    pub fn new(g: &'g Grammar) -> Self {
        Matcher { g, stacks: vec![Stack { frames: vec![Frame::Value(g.root)], ws: 0 }] }
    }

    /// The value is complete: nothing more need be written (an end-of-sequence may come).
    pub fn is_complete(&self) -> bool {
        self.stacks.iter().any(|s| match s.frames.as_slice() {
            [] => true,
            [Frame::Num { st, .. }] => st.accepting(),
            _ => false,
        })
    }

    /// No byte can come next (complete, or a dead end).
    pub fn is_closed(&self) -> bool {
        self.stacks.iter().all(|s| s.frames.is_empty())
    }

    /// Inside a string in every alternative, outside any escape: a run of bytes without `"`,
    /// `\` or control characters leaves the state as it is.
    pub fn in_plain_string(&self) -> bool {
        !self.stacks.is_empty() && self.stacks.iter().all(|s| s.frames.last() == Some(&Frame::Str(Str::Normal)))
    }

    fn lit_bytes(&self, lit: Lit) -> &'g [u8] {
        match lit {
            Lit::True => b"true",
            Lit::False => b"false",
            Lit::Null => b"null",
            Lit::Node(n) => match &self.g.nodes[n as usize] {
                Node::Literal(b) => b,
                _ => b"",
            },
            Lit::Key(n, i) => match &self.g.nodes[n as usize] {
                Node::Object(fields) => fields.get(i as usize).map_or(&b""[..], |f| &f.0[..]),
                _ => b"",
            },
        }
    }

    /// Advances over `b`; false (and the state unchanged) when no alternative accepts it.
    pub fn feed(&mut self, b: u8) -> bool {
        let mut out = Vec::with_capacity(self.stacks.len());
        for s in &self.stacks {
            self.step(s.clone(), b, &mut out, 0);
        }
        if out.is_empty() {
            return false;
        }
        out.dedup();
        if out.len() > 1 {
            let mut uniq: Vec<Stack> = Vec::with_capacity(out.len());
            for s in out {
                if !uniq.contains(&s) {
                    uniq.push(s);
                }
            }
            out = uniq;
        }
        out.truncate(MAX_STACKS);
        self.stacks = out;
        true
    }

    /// Advances over all of `bytes`; false (state unspecified) when any byte is refused.
    pub fn feed_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.feed(b))
    }

    /// Whether `bytes` could come next (the state is not changed).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        if self.in_plain_string() && bytes.iter().all(|&b| b != b'"' && b != b'\\' && b >= 0x20) {
            return true;
        }
        self.clone().feed_all(bytes)
    }

    fn step(&self, mut s: Stack, b: u8, out: &mut Vec<Stack>, depth: u32) {
        if depth > 64 {
            return;
        }
        let Some(top) = s.frames.last().copied() else { return };
        if is_ws(b) && top.takes_ws() {
            if s.ws < MAX_WS {
                s.ws += 1;
                out.push(s);
            }
            return;
        }
        let last = s.frames.len() - 1;
        let refeed = |s: Stack, out: &mut Vec<Stack>| self.step(s, b, out, depth + 1);
        match top {
            Frame::Value(n) => {
                let next = match &self.g.nodes[n as usize] {
                    Node::AnyOf(alts) => {
                        for &a in alts {
                            let mut alt = s.clone();
                            alt.frames[last] = Frame::Value(a);
                            self.step(alt, b, out, depth + 1);
                        }
                        return;
                    }
                    Node::Any => match b {
                        b'{' => Frame::AnyObj(ObjSt::Open),
                        b'[' => Frame::Arr { node: n, count: 0, st: ArrSt::Open },
                        b'"' => Frame::Str(Str::Normal),
                        b'-' | b'0'..=b'9' => Frame::Num { st: Num::Start, integer: false, len: 0 },
                        b't' => Frame::Lit { lit: Lit::True, pos: 0 },
                        b'f' => Frame::Lit { lit: Lit::False, pos: 0 },
                        b'n' => Frame::Lit { lit: Lit::Null, pos: 0 },
                        _ => return,
                    },
                    Node::Object(_) => Frame::Obj { node: n, field: 0, st: ObjSt::Open },
                    Node::AnyObject => Frame::AnyObj(ObjSt::Open),
                    Node::Array { .. } => Frame::Arr { node: n, count: 0, st: ArrSt::Open },
                    Node::String => Frame::Str(Str::Normal),
                    Node::Number => Frame::Num { st: Num::Start, integer: false, len: 0 },
                    Node::Integer => Frame::Num { st: Num::Start, integer: true, len: 0 },
                    Node::Boolean => match b {
                        b't' => Frame::Lit { lit: Lit::True, pos: 0 },
                        b'f' => Frame::Lit { lit: Lit::False, pos: 0 },
                        _ => return,
                    },
                    Node::Null => Frame::Lit { lit: Lit::Null, pos: 0 },
                    Node::Literal(_) => Frame::Lit { lit: Lit::Node(n), pos: 0 },
                };
                if let Frame::Str(_) = next {
                    // The opening quote is consumed here.
                    if b != b'"' {
                        return;
                    }
                    s.frames[last] = next;
                    s.ws = 0;
                    out.push(s);
                    return;
                }
                s.frames[last] = next;
                refeed(s, out);
            }
            Frame::Lit { lit, pos } => {
                let bytes = self.lit_bytes(lit);
                if bytes.get(pos as usize) != Some(&b) {
                    return;
                }
                if pos as usize + 1 == bytes.len() {
                    s.frames.pop();
                } else {
                    s.frames[last] = Frame::Lit { lit, pos: pos + 1 };
                }
                s.ws = 0;
                out.push(s);
            }
            Frame::Str(st) => {
                let next = match (st, b) {
                    (Str::Normal, b'"') => None,
                    (Str::Normal, b'\\') => Some(Str::Escape),
                    (Str::Normal, c) if c < 0x20 => return,
                    (Str::Normal, _) => Some(Str::Normal),
                    (Str::Escape, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Some(Str::Normal),
                    (Str::Escape, b'u') => Some(Str::Hex(4)),
                    (Str::Escape, _) => return,
                    (Str::Hex(k), c) if c.is_ascii_hexdigit() => {
                        Some(if k == 1 { Str::Normal } else { Str::Hex(k - 1) })
                    }
                    (Str::Hex(_), _) => return,
                };
                match next {
                    None => {
                        s.frames.pop();
                    }
                    Some(n) => s.frames[last] = Frame::Str(n),
                }
                s.ws = 0;
                out.push(s);
            }
            Frame::Num { st, integer, len } => {
                let next = match (st, b) {
                    (Num::Start, b'-') => Some(Num::Minus),
                    (Num::Start | Num::Minus, b'0') => Some(Num::Zero),
                    (Num::Start | Num::Minus, b'1'..=b'9') => Some(Num::Int),
                    (Num::Int, b'0'..=b'9') => Some(Num::Int),
                    (Num::Zero | Num::Int, b'.') if !integer => Some(Num::Dot),
                    (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                    (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') if !integer => Some(Num::Exp),
                    (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                    (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
                    _ => None,
                };
                match next {
                    Some(n) if len < MAX_NUMBER_BYTES => {
                        s.frames[last] = Frame::Num { st: n, integer, len: len + 1 };
                        s.ws = 0;
                        out.push(s);
                    }
                    Some(_) => {}
                    None if st.accepting() => {
                        // The number ended; the byte belongs to what follows it.
                        s.frames.pop();
                        refeed(s, out);
                    }
                    None => {}
                }
            }
            Frame::Obj { node, field, st } => {
                let n_fields = match &self.g.nodes[node as usize] {
                    Node::Object(f) => f.len(),
                    _ => 0,
                };
                let set = |s: &mut Stack, field: u16, st: ObjSt| s.frames[last] = Frame::Obj { node, field, st };
                match (st, b) {
                    (ObjSt::Open, b'{') => set(&mut s, 0, if n_fields == 0 { ObjSt::Close } else { ObjSt::Key }),
                    (ObjSt::Key, _) => {
                        set(&mut s, field, ObjSt::Colon);
                        s.frames.push(Frame::Lit { lit: Lit::Key(node, field), pos: 0 });
                        return refeed(s, out);
                    }
                    (ObjSt::Colon, b':') => set(&mut s, field, ObjSt::Val),
                    (ObjSt::Val, _) => {
                        let value = match &self.g.nodes[node as usize] {
                            Node::Object(f) => f[field as usize].1,
                            _ => return,
                        };
                        set(&mut s, field, ObjSt::Next);
                        s.frames.push(Frame::Value(value));
                        return refeed(s, out);
                    }
                    (ObjSt::Next, b',') if (field as usize) + 1 < n_fields => set(&mut s, field + 1, ObjSt::Key),
                    (ObjSt::Next, b'}') if (field as usize) + 1 == n_fields => {
                        s.frames.pop();
                    }
                    (ObjSt::Close, b'}') => {
                        s.frames.pop();
                    }
                    _ => return,
                }
                s.ws = 0;
                out.push(s);
            }
            Frame::AnyObj(st) => {
                match (st, b) {
                    (ObjSt::Open, b'{') => s.frames[last] = Frame::AnyObj(ObjSt::FirstKey),
                    (ObjSt::FirstKey, b'}') | (ObjSt::Next, b'}') => {
                        s.frames.pop();
                    }
                    (ObjSt::FirstKey | ObjSt::Key, b'"') => {
                        s.frames[last] = Frame::AnyObj(ObjSt::Colon);
                        s.frames.push(Frame::Str(Str::Normal));
                    }
                    (ObjSt::Colon, b':') => s.frames[last] = Frame::AnyObj(ObjSt::Val),
                    (ObjSt::Val, _) => {
                        s.frames[last] = Frame::AnyObj(ObjSt::Next);
                        s.frames.push(Frame::Value(self.g.any));
                        return refeed(s, out);
                    }
                    (ObjSt::Next, b',') => s.frames[last] = Frame::AnyObj(ObjSt::Key),
                    _ => return,
                }
                s.ws = 0;
                out.push(s);
            }
            Frame::Arr { node, count, st } => {
                let (items, min, max) = match &self.g.nodes[node as usize] {
                    Node::Array { items, min, max } => (*items, *min, *max),
                    Node::Any => (node, 0, None),
                    _ => return,
                };
                let set = |s: &mut Stack, count: u32, st: ArrSt| s.frames[last] = Frame::Arr { node, count, st };
                match (st, b) {
                    (ArrSt::Open, b'[') => set(&mut s, 0, ArrSt::First),
                    (ArrSt::First, b']') if min == 0 => {
                        s.frames.pop();
                    }
                    (ArrSt::Next, b']') if count >= min => {
                        s.frames.pop();
                    }
                    (ArrSt::Next, b',') if max.is_none_or(|m| count < m) => set(&mut s, count, ArrSt::Item),
                    (ArrSt::First | ArrSt::Item, _) if max.is_none_or(|m| count < m) => {
                        set(&mut s, count + 1, ArrSt::Next);
                        s.frames.push(Frame::Value(items));
                        return refeed(s, out);
                    }
                    _ => return,
                }
                s.ws = 0;
                out.push(s);
            }
        }
    }
}
