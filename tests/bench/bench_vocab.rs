//! `make bench-vocab`: our exact MinED search against brute force (strsim over every pair,
//! the reference implementation's method) on the same machine and threads.
//!
//! Usage: bench_vocab A/tokenizer.json B/tokenizer.json [SAMPLE]
//! For each direction it times our full mapping, times brute force on a seeded random
//! sample of source tokens, checks that the two agree on the sample, and projects the
//! brute-force time of the whole vocabulary from the sample.
use std::path::Path;
use std::time::{Duration, Instant};

use fedmkt::vocab::{min_edit_mapping, token_texts, BruteForce};
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;

fn direction(from: &Path, to: &Path, sample_size: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (source, target) = (token_texts(from)?, token_texts(to)?);
    let ours = min_edit_mapping(&source, &target);
    let ours_time = started.elapsed();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let picked: Vec<usize> = sample(&mut rng, source.len(), sample_size.min(source.len())).into_vec();
    let brute_force = BruteForce::new(&target);
    let started = Instant::now();
    let reference: Vec<_> = picked.par_iter().map(|&i| brute_force.map(&source[i])).collect();
    let sample_time = started.elapsed();
    let disagreements = picked.iter().zip(&reference).filter(|(&i, r)| &&ours[i] != r).count();
    let projected = sample_time.mul_f64(source.len() as f64 / picked.len() as f64);
    println!(
        "{} -> {}: {} x {} tokens | ours (full, incl. loading) {:.2} s | brute force {} sampled {:.2} s, projected full {:.0} s | speed-up {:.0}x | disagreements on sample: {}",
        from.display(),
        to.display(),
        source.len(),
        target.len(),
        ours_time.as_secs_f64(),
        picked.len(),
        sample_time.as_secs_f64(),
        projected.as_secs_f64(),
        projected.as_secs_f64() / ours_time.as_secs_f64(),
        disagreements
    );
    anyhow::ensure!(disagreements == 0, "the fast search disagrees with brute force");
    Ok(ours_time)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: bench_vocab A/tokenizer.json B/tokenizer.json [SAMPLE]");
    let (a, b) = (Path::new(&args[1]), Path::new(&args[2]));
    let sample_size = args.get(3).map_or(Ok(300), |s| s.parse())?;
    println!("threads: {}", rayon::current_num_threads());
    let total = direction(a, b, sample_size)? + direction(b, a, sample_size)?;
    println!("both directions, ours: {:.2} s (goal <= 5 s)", total.as_secs_f64());
    Ok(())
}
