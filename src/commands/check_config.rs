//! `commune-ioc check-config FILE`: validate, list every problem, exit 2.

use std::path::Path;

use commune_ioc::config;

/// Print a summary and return, or print every problem and exit 2.
pub fn run(file: &Path) -> anyhow::Result<()> {
    match config::load(file) {
        Ok(c) => {
            println!(
                "{}: OK — hợp lệ: {} ({}), {} thôn/bản, {} camera, {} cụm loa, {} cảm biến, {} chỉ tiêu",
                file.display(),
                c.commune.name,
                c.commune.id,
                c.villages.len(),
                c.cameras.len(),
                c.speakers.len(),
                c.sensors.len(),
                c.indicators.len()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("Tệp cấu hình chưa dùng được, cần sửa các lỗi sau (vị trí: tệp:dòng:cột, khóa, lý do).");
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
