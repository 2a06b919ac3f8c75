//! `commune-ioc check-config FILE`: validate, list every problem, exit 2;
//! when valid, list the mapped sources and their subscriptions (and point at
//! `commune-ioc map` to try a sample message).

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
            for m in &c.site.mapped {
                println!(
                    "  nguồn ánh xạ `{}`: {} luật, nghe {}",
                    m.id,
                    m.rules.len() + m.availability.len(),
                    m.filters().join(", ")
                );
            }
            if !c.site.mapped.is_empty() {
                println!(
                    "  Xem trước một bản tin: commune-ioc map --config {} --topic CHỦ_ĐỀ --payload TỆP",
                    file.display()
                );
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("Tệp cấu hình chưa dùng được, cần sửa các lỗi sau (vị trí: tệp:dòng:cột, khóa, lý do).");
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
