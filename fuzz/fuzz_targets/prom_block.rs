//! `hearth import prometheus-tsdb` reads block directories someone else wrote, maybe
//! damaged: any index and chunk file bytes must end in series or an error, never a
//! panic, an overflow or an allocation sized by a damaged count.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hearth-fuzz-prom-block-{}", std::process::id()));
        std::fs::create_dir_all(d.join("chunks")).unwrap();
        std::fs::write(
            d.join("meta.json"),
            r#"{"ulid":"01J0000000000000000000000A","minTime":0,"maxTime":7200000,"version":1}"#,
        )
        .unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (index, rest) = data[2..].split_at(n);
    let d = dir();
    std::fs::write(d.join("index"), index).unwrap();
    let mut chunks = vec![0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0];
    chunks.extend_from_slice(rest);
    std::fs::write(d.join("chunks/000001"), chunks).unwrap();
    if let Ok(block) = hearth_storage::promblock::PromBlock::open(d) {
        let _ = block.series();
    }
});
