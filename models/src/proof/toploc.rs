//! TOPLOC's polynomial encoding (arXiv 2501.16007), byte-compatible with the reference
//! implementation, the PyPI package `toploc` 0.1.6 (MIT; `toploc/C/csrc/{ndd,poly}.cpp`).
//!
//! A chunk of activations (bf16) is reduced to its top-k entries by magnitude; the k points
//! (flat index mod m, bf16 bit pattern) are interpolated by the unique polynomial of degree < k
//! over GF(65497), where m ≤ 65497 is the largest modulus that keeps the indices distinct.
//! Wire format: `m` as big-endian u16, then the k coefficients (ascending powers) as big-endian
//! u16: 2 + 2k bytes (258 bytes for k = 128).

/// The prime field of the interpolation (toploc's `MOD_N`).
pub const MOD_N: i64 = 65_497;

/// One chunk's commitment: the interpolating polynomial and the index modulus.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProofPoly {
    /// Coefficients in ascending powers, each in `[0, MOD_N)`.
    pub coeffs: Vec<u16>,
    /// Indices are reduced mod this before evaluation (0 only in a null proof).
    pub modulus: u16,
}

/// Why a proof cannot be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolyError {
    #[error("proof bytes: {0}")]
    Malformed(&'static str),
    #[error("x and y have different lengths ({0} and {1})")]
    Length(usize, usize),
    #[error("no modulus below 65498 keeps the {0} indices distinct")]
    NoInjectiveModulus(usize),
    #[error("no points to interpolate")]
    Empty,
}

fn safe_mod(v: i64) -> i64 {
    v.rem_euclid(MOD_N)
}

/// Inverse of `a` mod [`MOD_N`] (prime, so it exists for `a != 0`).
fn mod_inverse(a: i64) -> i64 {
    let (mut old_r, mut r) = (safe_mod(a), MOD_N);
    let (mut old_s, mut s) = (1i64, 0i64);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    safe_mod(old_s)
}

/// The largest modulus in `(0, 65497]` under which the indices stay distinct (toploc searches
/// downwards from 65497, as here).
pub fn find_injective_modulus(x: &[u64]) -> Result<u16, PolyError> {
    let mut seen = std::collections::HashSet::with_capacity(x.len());
    for m in (1..=MOD_N as u64).rev() {
        seen.clear();
        if x.iter().all(|&v| seen.insert(v % m)) {
            return Ok(m as u16);
        }
    }
    Err(PolyError::NoInjectiveModulus(x.len()))
}

/// Standard-form coefficients of the polynomial through `(x[i], y[i])` over GF(65497), by
/// Newton's divided differences (the same arithmetic as toploc's `compute_newton_coefficients`).
/// The `x` must be distinct mod 65497.
pub fn newton_coefficients(x: &[i64], y: &[i64]) -> Result<Vec<u16>, PolyError> {
    if x.len() != y.len() {
        return Err(PolyError::Length(x.len(), y.len()));
    }
    if x.is_empty() {
        return Err(PolyError::Empty);
    }
    let n = x.len();
    let mut dd: Vec<i64> = y.iter().map(|&v| safe_mod(v)).collect();
    for k in 1..n {
        for i in (k..n).rev() {
            let num = safe_mod(dd[i] - dd[i - 1]);
            let inv = mod_inverse(safe_mod(x[i] - x[i - k]));
            dd[i] = safe_mod(num * inv);
        }
    }
    let mut coeffs = vec![0i64; n];
    let mut factor = vec![0i64; n];
    factor[0] = 1;
    for i in 0..n {
        for j in 0..=i {
            coeffs[j] = safe_mod(coeffs[j] + dd[i] * factor[j]);
        }
        if i + 1 < n {
            let minus_xi = safe_mod(-x[i]);
            let mut prev = factor[0];
            factor[0] = safe_mod(prev * minus_xi);
            for f in factor.iter_mut().take(i + 2).skip(1) {
                let old = *f;
                *f = safe_mod(prev + old * minus_xi);
                prev = old;
            }
        }
    }
    Ok(coeffs.into_iter().map(|c| c as u16).collect())
}

impl ProofPoly {
    /// Interpolates `(index, bf16 bits)` points (toploc's `ProofPoly.from_points`).
    pub fn from_points(indices: &[u64], values: &[u16]) -> Result<Self, PolyError> {
        if indices.len() != values.len() {
            return Err(PolyError::Length(indices.len(), values.len()));
        }
        let modulus = find_injective_modulus(indices)?;
        let x: Vec<i64> = indices.iter().map(|&i| (i % modulus as u64) as i64).collect();
        let y: Vec<i64> = values.iter().map(|&v| v as i64).collect();
        Ok(ProofPoly { coeffs: newton_coefficients(&x, &y)?, modulus })
    }

    /// The all-zero proof toploc emits when building fails (`ProofPoly.null`).
    pub fn null(len: usize) -> Self {
        ProofPoly { coeffs: vec![0; len], modulus: 0 }
    }

    /// Horner's rule mod 65497 at `x` (already reduced by the caller, as toploc's C verifier does).
    pub fn eval(&self, x: u64) -> u16 {
        let Some((&last, rest)) = self.coeffs.split_last() else { return 0 };
        let x = (x % MOD_N as u64) as i64;
        let mut acc = last as i64;
        for &c in rest.iter().rev() {
            acc = (acc * x + c as i64) % MOD_N;
        }
        safe_mod(acc) as u16
    }

    /// Evaluates at a flat activation index: reduced by the proof's modulus first.
    pub fn eval_index(&self, index: u64) -> u16 {
        let m = self.modulus.max(1) as u64;
        self.eval(index % m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 2 * self.coeffs.len());
        out.extend_from_slice(&self.modulus.to_be_bytes());
        for c in &self.coeffs {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out
    }

    /// Reads the wire format. Stricter than toploc (which drops a trailing odd byte): an odd
    /// length, fewer than 2 bytes or a coefficient outside the field is an error.
    pub fn from_bytes(b: &[u8]) -> Result<Self, PolyError> {
        if b.len() < 2 {
            return Err(PolyError::Malformed("shorter than 2 bytes"));
        }
        if !b.len().is_multiple_of(2) {
            return Err(PolyError::Malformed("odd length"));
        }
        let modulus = u16::from_be_bytes([b[0], b[1]]);
        let coeffs: Vec<u16> = b[2..].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        if coeffs.iter().any(|&c| c as i64 >= MOD_N) || modulus as i64 > MOD_N {
            return Err(PolyError::Malformed("value outside GF(65497)"));
        }
        Ok(ProofPoly { coeffs, modulus })
    }
}

/// Exponent and mantissa fields of a bf16 bit pattern (toploc's `get_fp_parts`).
pub fn bf16_parts(bits: u16) -> (i32, i32) {
    (((bits & 0x7F80) >> 7) as i32, (bits & 0x007F) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_polynomial_passes_through_every_point() {
        let x: Vec<u64> = vec![3, 17, 1000, 65_000, 42, 7];
        let y: Vec<u16> = vec![0x3f80, 0xbf80, 0x4049, 12, 65_000, 0];
        let p = ProofPoly::from_points(&x, &y).unwrap();
        assert_eq!(p.modulus, 65_497);
        for (&xi, &yi) in x.iter().zip(&y) {
            assert_eq!(p.eval_index(xi) as i64, yi as i64 % MOD_N);
        }
        assert_eq!(p.coeffs.len(), x.len());
    }

    #[test]
    fn coefficients_do_not_depend_on_point_order() {
        let x: Vec<u64> = (0..64).map(|i| i * 977 + 5).collect();
        let y: Vec<u16> = (0..64).map(|i| (i * 7919 % 60_000) as u16).collect();
        let a = ProofPoly::from_points(&x, &y).unwrap();
        let (mut xr, mut yr) = (x.clone(), y.clone());
        xr.reverse();
        yr.reverse();
        assert_eq!(a, ProofPoly::from_points(&xr, &yr).unwrap());
    }

    #[test]
    fn indices_beyond_the_field_get_a_smaller_injective_modulus() {
        // 65497 and 0 collide mod 65497; 65496 separates them.
        let x = [0u64, 65_497, 10];
        let m = find_injective_modulus(&x).unwrap();
        assert!(m < 65_497);
        let p = ProofPoly::from_points(&x, &[1, 2, 3]).unwrap();
        assert_eq!(p.modulus, m);
        assert_eq!([p.eval_index(0), p.eval_index(65_497), p.eval_index(10)], [1, 2, 3]);
    }

    #[test]
    fn bytes_round_trip_and_are_two_plus_two_k_long() {
        let x: Vec<u64> = (0..128).map(|i| i * 131).collect();
        let y: Vec<u16> = (0..128).map(|i| (i * 331) as u16).collect();
        let p = ProofPoly::from_points(&x, &y).unwrap();
        let b = p.to_bytes();
        assert_eq!(b.len(), 258);
        assert_eq!(&b[..2], &65_497u16.to_be_bytes());
        assert_eq!(ProofPoly::from_bytes(&b).unwrap(), p);
    }

    #[test]
    fn malformed_bytes_are_refused() {
        assert!(ProofPoly::from_bytes(&[]).is_err());
        assert!(ProofPoly::from_bytes(&[0xff]).is_err());
        assert!(ProofPoly::from_bytes(&[0xff, 0xd9, 0, 1, 2]).is_err());
        assert!(ProofPoly::from_bytes(&[0xff, 0xd9, 0xff, 0xff]).is_err(), "coefficient 65535 is outside the field");
    }

    #[test]
    fn a_mismatched_point_count_is_an_error() {
        assert_eq!(ProofPoly::from_points(&[1, 2], &[3]), Err(PolyError::Length(2, 1)));
        assert_eq!(newton_coefficients(&[], &[]), Err(PolyError::Empty));
    }

    #[test]
    fn fp_parts_split_bf16() {
        assert_eq!(bf16_parts(0x3f80), (127, 0)); // 1.0
        assert_eq!(bf16_parts(0xc049), (128, 0x49)); // -3.14
    }
}
