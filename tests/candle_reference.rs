//! Our architectures against candle-transformers' independent implementations on the same
//! weights (theirs cannot train: fused ops without gradients, no LoRA). candle-transformers
//! returns the last position's logits only, so that is what is compared.
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{gemma3, llama};
use fedmkt::model::{AdapterSource, Model};
use fedmkt_tests::testdata;

/// The first golden sequence of a tiny model (unpadded) as `[1, n]` ids.
fn sequence(model: &str) -> Tensor {
    let golden =
        candle_core::safetensors::load(testdata(&format!("golden/models/{model}.safetensors")), &Device::Cpu).unwrap();
    let n = golden["lengths"].to_vec1::<i64>().unwrap()[1] as usize;
    golden["ids"].get(1).unwrap().narrow(0, 0, n).unwrap().to_dtype(DType::U32).unwrap().unsqueeze(0).unwrap()
}

fn ours_last(model: &str, ids: &Tensor) -> Vec<f32> {
    let m = Model::load(&testdata(&format!("models/{model}")), AdapterSource::None, DType::F32, &Device::Cpu).unwrap();
    let logits = m.forward(ids).unwrap();
    let n = logits.dim(1).unwrap();
    logits.get(0).unwrap().get(n - 1).unwrap().to_vec1::<f32>().unwrap()
}

fn weights(model: &str) -> VarBuilder<'static> {
    let file = testdata(&format!("models/{model}/model.safetensors"));
    // SAFETY: read-only memory map of a test fixture.
    unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu).unwrap() }
}

fn config_text(model: &str) -> String {
    std::fs::read_to_string(testdata(&format!("models/{model}/config.json"))).unwrap()
}

fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = ours.iter().zip(theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{what}: relative difference {:e}", worst / scale);
    assert!(worst / scale < 1e-4, "{what}: relative difference {}", worst / scale);
}

#[test]
fn llama_matches_candle_transformers() {
    let ids = sequence("tiny-llama");
    let config: llama::LlamaConfig = serde_json::from_str(&config_text("tiny-llama")).unwrap();
    let config = config.into_config(false);
    let reference = llama::Llama::load(weights("tiny-llama"), &config).unwrap();
    let mut cache = llama::Cache::new(false, DType::F32, &config, &Device::Cpu).unwrap();
    let theirs = reference.forward(&ids, 0, &mut cache).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close(&ours_last("tiny-llama", &ids), &theirs, "tiny-llama");
}

fn gemma3_reference_last(ids: &Tensor, window_shift: isize) -> Vec<f32> {
    let mut config: gemma3::Config = serde_json::from_str(&config_text("tiny-gemma3")).unwrap();
    config.sliding_window = (config.sliding_window as isize + window_shift) as usize;
    let mut reference = gemma3::Model::new(false, &config, weights("tiny-gemma3")).unwrap();
    reference.forward(ids, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Within the sliding window (16 tokens here) the two implementations must agree.
#[test]
fn gemma3_matches_candle_transformers_within_the_window() {
    let ids = sequence("tiny-gemma3").narrow(1, 0, 16).unwrap();
    assert_close(&ours_last("tiny-gemma3", &ids), &gemma3_reference_last(&ids, 0), "tiny-gemma3, 16 tokens");
}

/// Beyond it they differ by one key: candle-transformers lets query i see key j when
/// i − j ≤ w, transformers (and we, checked in models.rs) when i − j < w. Given w − 1,
/// candle-transformers agrees with us on an 81-token sequence.
#[test]
fn gemma3_window_differs_from_candle_transformers_by_one_key() {
    let ids = sequence("tiny-gemma3");
    assert!(ids.dim(1).unwrap() > 16);
    assert_close(
        &ours_last("tiny-gemma3", &ids),
        &gemma3_reference_last(&ids, -1),
        "tiny-gemma3, candle-transformers with w-1",
    );
}
