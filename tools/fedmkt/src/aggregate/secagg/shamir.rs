//! Shamir's t-out-of-n secret sharing over GF(2^8), byte by byte (Shamir 1979).
//!
//! Ours rather than `sharks` 0.5: that crate draws every polynomial coefficient from 1..=255,
//! never 0, so a single share of a byte can never equal the secret byte (its
//! `random_polynomial`); with t = 2 each share rules out one value of each secret byte.
//! Here every coefficient, the leading one included, is uniform over all 256 values, drawn
//! from the caller's cryptographic generator; share x-coordinates are the parties' ids.
use anyhow::Result;
use rand::RngCore;

use crate::cli::bad_usage;

/// Multiplication in GF(2^8) modulo the AES polynomial x^8 + x^4 + x^3 + x + 1, without
/// table look-ups or branches on the operands.
pub fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (carry & 0x1B);
        b >>= 1;
    }
    product
}

/// The multiplicative inverse: a^254 (a^255 = 1 for a ≠ 0).
fn inverse(a: u8) -> u8 {
    let mut result = 1u8;
    let mut power = a;
    let mut exponent = 254u8;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = mul(result, power);
        }
        power = mul(power, power);
        exponent >>= 1;
    }
    result
}

/// Shares of `secret` for the x-coordinates `xs` (distinct, non-zero), any `threshold` of
/// which rebuild it: share i holds f_j(xs[i]) for every byte j, where f_j(0) = secret[j] and
/// f_j's other `threshold − 1` coefficients come from `rng`.
pub fn split(secret: &[u8], threshold: usize, xs: &[u8], rng: &mut impl RngCore) -> Result<Vec<Vec<u8>>> {
    check_points(xs, threshold)?;
    let mut shares = vec![Vec::with_capacity(secret.len()); xs.len()];
    let mut coefficients = vec![0u8; threshold - 1];
    for &byte in secret {
        rng.fill_bytes(&mut coefficients);
        for (share, &x) in shares.iter_mut().zip(xs) {
            // Horner's rule from the highest coefficient down to the secret.
            let y = coefficients.iter().rev().fold(0u8, |acc, &c| mul(acc, x) ^ c);
            share.push(mul(y, x) ^ byte);
        }
    }
    Ok(shares)
}

/// The secret from `threshold` shares `(x, bytes)` by Lagrange interpolation at 0; extra
/// shares beyond the first `threshold` are not used.
pub fn recover(shares: &[(u8, &[u8])], threshold: usize) -> Result<Vec<u8>> {
    if shares.len() < threshold {
        return Err(bad_usage(format!("{} shares, {threshold} needed", shares.len())));
    }
    let used = &shares[..threshold];
    let xs: Vec<u8> = used.iter().map(|s| s.0).collect();
    check_points(&xs, threshold)?;
    let len = used[0].1.len();
    if used.iter().any(|s| s.1.len() != len) {
        return Err(bad_usage("shares of different lengths"));
    }
    let weights: Vec<u8> = (0..threshold).map(|i| lagrange_at_zero(&xs, i)).collect();
    Ok((0..len).map(|j| used.iter().zip(&weights).fold(0u8, |acc, (s, &w)| acc ^ mul(s.1[j], w))).collect())
}

/// ℓ_i(0) = Π_{m≠i} x_m / (x_m − x_i); subtraction is XOR in GF(2^8).
fn lagrange_at_zero(xs: &[u8], i: usize) -> u8 {
    xs.iter().enumerate().filter(|&(m, _)| m != i).fold(1u8, |acc, (_, &xm)| mul(acc, mul(xm, inverse(xm ^ xs[i]))))
}

fn check_points(xs: &[u8], threshold: usize) -> Result<()> {
    let mut sorted = xs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if threshold == 0 || xs.len() < threshold || sorted.len() != xs.len() || sorted.first() == Some(&0) {
        return Err(bad_usage(format!("a {threshold}-of-{} sharing needs distinct non-zero points", xs.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(seed)
    }

    #[test]
    fn multiplication_matches_fips_197() {
        // FIPS-197 §4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
        assert_eq!(mul(0x57, 0x83), 0xC1);
        assert_eq!(mul(0x57, 0x13), 0xFE);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1, "inverse of {a:#x}");
        }
    }

    #[test]
    fn any_threshold_of_the_shares_rebuilds_the_secret() {
        let secret: Vec<u8> = (0..64).map(|i| (i * 37 + 11) as u8).collect();
        let xs = [1u8, 2, 3, 4, 5];
        let shares = split(&secret, 3, &xs, &mut rng(1)).unwrap();
        for subset in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let chosen: Vec<(u8, &[u8])> = subset.iter().map(|&i| (xs[i], shares[i].as_slice())).collect();
            assert_eq!(recover(&chosen, 3).unwrap(), secret);
        }
        let two: Vec<(u8, &[u8])> = (0..2).map(|i| (xs[i], shares[i].as_slice())).collect();
        assert!(recover(&two, 3).is_err());
        // Two shares of a 3-of-5 sharing interpolated as if 2 sufficed: not the secret.
        assert_ne!(recover(&two, 2).unwrap(), secret);
    }

    /// With t = 2 a share is s + a·x: uniform over all 256 values only if a may be 0 (the
    /// flaw of sharks 0.5, whose shares never equal the secret byte).
    #[test]
    fn a_single_share_is_uniform_including_the_secret_value() {
        let secret = [0x42u8; 4096];
        let shares = split(&secret, 2, &[7, 9], &mut rng(2)).unwrap();
        let mut counts = [0usize; 256];
        shares[0].iter().for_each(|&b| counts[b as usize] += 1);
        // 4096 draws over 256 values: 16 expected each; P(count = 0) ≈ e^-16.
        assert!(counts[0x42] > 0, "a share never equals the secret byte: biased coefficients");
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - 16.0).powi(2) / 16.0).sum();
        assert!(chi2 < 255.0 + 6.0 * 510f64.sqrt(), "share bytes are not uniform: χ² {chi2}");
    }

    #[test]
    fn repeated_or_zero_points_are_refused() {
        assert!(split(b"s", 2, &[1, 1], &mut rng(3)).is_err());
        assert!(split(b"s", 2, &[0, 1], &mut rng(3)).is_err());
        assert!(split(b"s", 3, &[1, 2], &mut rng(3)).is_err());
    }
}
