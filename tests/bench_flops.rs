//! The benchmarks' FLOP counter reproduces the derivation of `anchors.md` §4.5.

#[path = "../benches/common/flops.rs"]
#[allow(dead_code)]
mod flops;

use flops::{Dims, audio_tokens, forward, video_tokens};

#[test]
fn ltx2_19b_at_768x512x121_matches_the_anchor_table() {
    let video = video_tokens(768, 512, 121);
    assert_eq!(video, 6144);
    let audio = audio_tokens(121, 24.0);
    assert_eq!(audio, 126);
    let f = forward(&Dims::LTX2_19B, video, audio, 1024);
    println!("{f:?}, total {:.1} TFLOP", f.total() / 1e12);
    // anchors.md §4.5: 159.2 T linear, 4.1 T text K/V, 35.3 T attention, 198.7 T total.
    assert!((f.linear / 1e12 - 159.2).abs() < 0.5, "{f:?}");
    assert!((f.attention / 1e12 - 35.3).abs() < 0.1, "{f:?}");
    assert!((f.text / 1e12 - 4.2).abs() < 0.1, "{f:?}");
    assert!((f.total() / 1e12 - 198.7).abs() < 1.0, "{f:?}");
}

#[test]
fn stage_two_sizes_match_the_anchor_table() {
    // 1536x1024x121: 1,135.6 T per forward; 1280x704x121: 536.6 T.
    let big = forward(&Dims::LTX2_19B, video_tokens(1536, 1024, 121), 126, 1024);
    assert!((big.total() / 1e12 - 1135.6).abs() < 2.0, "{big:?}");
    let mid = forward(&Dims::LTX2_19B, video_tokens(1280, 704, 121), 126, 1024);
    assert!((mid.total() / 1e12 - 536.6).abs() < 2.0, "{mid:?}");
}
