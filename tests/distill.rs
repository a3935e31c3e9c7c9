//! `distill`'s losses: the sparse KD loss equals a dense reference on a tiny vocabulary, and
//! its gradient matches finite differences of that reference (f64, written independently).
use candle_core::{Device, Tensor, Var};
use fedmkt::align::PAD_ID;
use fedmkt::train::{sparse_kd, TeacherOptions, TeacherTargets};
use half::f16;

const V: usize = 7;
const K: usize = 3;

/// Three positions; the last has a padding slot (as after merging in `align`).
fn teacher_rows() -> (Vec<u32>, Vec<f16>, Vec<f32>) {
    let ids = vec![2, 5, 0, 6, 1, 3, 4, 0, PAD_ID];
    let logits = [3.0, 1.5, -0.5, 0.2, 0.1, -2.0, 1.0, 0.5, f32::NEG_INFINITY].map(f16::from_f32).to_vec();
    let lse = vec![3.6, 1.9, 2.2];
    (ids, logits, lse)
}

fn student_logits() -> Vec<f64> {
    (0..3 * V).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.37).collect()
}

/// Dense reference: the teacher's distribution spread over the whole vocabulary (top-K
/// renormalised, or top-K true probabilities plus the tail spread as one bucket), and the
/// student's full softmax at temperature T.
fn dense_loss(student: &[f64], opts: TeacherOptions) -> f64 {
    let (ids, logits, lse) = teacher_rows();
    let mut total = 0.0;
    for row in 0..3 {
        let z: Vec<f64> = student[row * V..(row + 1) * V].iter().map(|x| x / opts.temperature).collect();
        let norm = z.iter().map(|x| x.exp()).sum::<f64>().ln();
        let p: Vec<f64> = z.iter().map(|x| (x - norm).exp()).collect();
        let mut q = vec![0.0; V];
        let entries: Vec<(usize, f64)> = (0..K).filter(|&i| ids[row * K + i] != PAD_ID).map(|i| (ids[row * K + i] as usize, logits[row * K + i].to_f64() / opts.temperature)).collect();
        let top_mass: f64 = if opts.tail { entries.iter().map(|e| (e.1 - lse[row] as f64).exp()).sum() } else { 1.0 };
        let renorm: f64 = entries.iter().map(|e| e.1.exp()).sum();
        for &(id, l) in &entries {
            q[id] += if opts.tail { (l - lse[row] as f64).exp() } else { l.exp() / renorm };
        }
        total -= (0..V).filter(|v| q[*v] > 0.0).map(|v| q[v] * p[v].ln()).sum::<f64>();
        if opts.tail {
            let outside: f64 = (0..V).filter(|v| !entries.iter().any(|e| e.0 == *v)).map(|v| p[v]).sum();
            total -= (1.0 - top_mass) * outside.ln();
        }
    }
    total / 3.0
}

fn sparse(student: &[f64], opts: TeacherOptions) -> (f64, Vec<f64>) {
    let (ids, logits, lse) = teacher_rows();
    let targets = TeacherTargets::from_rows(&ids, &logits, &lse, K, opts, &Device::Cpu).unwrap();
    let var = Var::from_tensor(&Tensor::from_vec(student.iter().map(|&x| x as f32).collect::<Vec<_>>(), (3, V), &Device::Cpu).unwrap()).unwrap();
    let loss = sparse_kd(var.as_tensor(), &targets, opts.temperature).unwrap();
    let grads = loss.backward().unwrap();
    let grad = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (loss.to_scalar::<f32>().unwrap() as f64, grad.into_iter().map(f64::from).collect())
}

const CASES: [TeacherOptions; 3] = [
    TeacherOptions { temperature: 1.0, tail: false },
    TeacherOptions { temperature: 2.0, tail: false },
    TeacherOptions { temperature: 1.0, tail: true },
];

#[test]
fn sparse_kd_equals_the_dense_reference() {
    for opts in CASES {
        let (got, _) = sparse(&student_logits(), opts);
        let want = dense_loss(&student_logits(), opts);
        assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{opts:?}: sparse {got} vs dense {want}");
    }
}

#[test]
fn sparse_kd_gradient_matches_finite_differences() {
    for opts in CASES {
        let student = student_logits();
        let (_, grad) = sparse(&student, opts);
        for i in 0..student.len() {
            let eps = 1e-5;
            let (mut up, mut down) = (student.clone(), student.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (dense_loss(&up, opts) - dense_loss(&down, opts)) / (2.0 * eps);
            assert!((grad[i] - numeric).abs() < 1e-4, "{opts:?}: d/dz[{i}] analytic {} vs numeric {numeric}", grad[i]);
        }
    }
}
