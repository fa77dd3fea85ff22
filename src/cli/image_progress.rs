//! Terminal output of `wkube image pull`: one progress bar per layer on a terminal (as
//! `docker pull` shows them), plain lines otherwise (logs, CI, tests).

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::image::{LayerProgress, PullEvent};

/// Reports a pull's [`PullEvent`]s to the user.
pub enum PullReporter {
    Bars(Mutex<Bars>),
    Lines(Mutex<Lines>),
}

impl PullReporter {
    /// Bars when stdout is a terminal, lines otherwise.
    pub fn for_stdout() -> Self {
        use std::io::IsTerminal as _;
        if std::io::stdout().is_terminal() {
            PullReporter::Bars(Mutex::new(Bars::default()))
        } else {
            PullReporter::Lines(Mutex::new(Lines::default()))
        }
    }

    pub fn report(&self, event: PullEvent) {
        match self {
            PullReporter::Bars(b) => {
                if let Ok(mut b) = b.lock() {
                    b.report(event);
                }
            }
            PullReporter::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    l.report(event, &mut std::io::stdout());
                }
            }
        }
    }
}

/// `sha256:0123456789ab`: enough of a digest to tell layers apart.
fn short(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Per-layer bars under one [`MultiProgress`].
pub struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
        }
    }
}

impl Bars {
    fn style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    fn report(&mut self, event: PullEvent) {
        match event {
            PullEvent::Resolving => {
                let _ = self.multi.println("resolving the manifest");
            }
            PullEvent::Layers { layers } => {
                for LayerProgress {
                    digest,
                    size,
                    present,
                } in layers
                {
                    let bar = self.multi.add(ProgressBar::new(size));
                    bar.set_style(Self::style());
                    bar.set_prefix(short(&digest));
                    if present {
                        bar.set_position(size);
                        bar.finish_with_message("already exists");
                    } else {
                        bar.set_message("waiting");
                    }
                    self.bars.insert(digest, bar);
                }
            }
            PullEvent::Downloading {
                digest,
                done,
                total,
            } => {
                if let Some(bar) = self.bars.get(&digest) {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(if done >= total {
                        "verifying"
                    } else {
                        "downloading"
                    });
                    // A wasm layer is complete once downloaded; a container layer is after
                    // it is unpacked.
                    if done >= total {
                        bar.tick();
                    }
                }
            }
            PullEvent::Unpacked { digest } => {
                if let Some(bar) = self.bars.get(&digest) {
                    bar.finish_with_message("pull complete");
                }
            }
            PullEvent::Done { .. } | PullEvent::AlreadyPresent { .. } => {
                for bar in self.bars.values().filter(|b| !b.is_finished()) {
                    bar.finish_with_message("pull complete");
                }
            }
        }
    }
}

/// Plain lines: one when a layer starts, at each quarter, and when it is unpacked.
#[derive(Default)]
pub struct Lines {
    /// Quarters already printed, per layer digest.
    quarters: HashMap<String, u64>,
}

impl Lines {
    fn report(&mut self, event: PullEvent, out: &mut impl std::io::Write) {
        let line = match event {
            PullEvent::Resolving => Some("resolving the manifest".to_string()),
            PullEvent::Layers { layers } => {
                for l in layers {
                    let what = if l.present {
                        "already exists"
                    } else {
                        "to download"
                    };
                    let _ = writeln!(
                        out,
                        "layer {} {} {what}",
                        short(&l.digest),
                        human_bytes(l.size)
                    );
                }
                None
            }
            PullEvent::Downloading {
                digest,
                done,
                total,
            } => {
                let quarter = (done * 4).checked_div(total).unwrap_or(4);
                let last = self.quarters.get(&digest).copied();
                if last.is_some_and(|q| q >= quarter) {
                    None
                } else {
                    self.quarters.insert(digest.clone(), quarter);
                    Some(format!(
                        "layer {} downloading {} of {} ({}%)",
                        short(&digest),
                        human_bytes(done),
                        human_bytes(total),
                        (done * 100).checked_div(total).unwrap_or(100)
                    ))
                }
            }
            PullEvent::Unpacked { digest } => Some(format!("layer {} unpacked", short(&digest))),
            PullEvent::Done { .. } | PullEvent::AlreadyPresent { .. } => None,
        };
        if let Some(line) = line {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_each_layer_start_quarters_and_unpack() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let d = "sha256:0123456789abcdef".to_string();
        lines.report(
            PullEvent::Layers {
                layers: vec![LayerProgress {
                    digest: d.clone(),
                    size: 4096,
                    present: false,
                }],
            },
            &mut out,
        );
        for done in [0, 512, 1024, 1500, 4096] {
            lines.report(
                PullEvent::Downloading {
                    digest: d.clone(),
                    done,
                    total: 4096,
                },
                &mut out,
            );
        }
        lines.report(PullEvent::Unpacked { digest: d }, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "layer sha256:0123456789ab 4.0 KiB to download\n\
             layer sha256:0123456789ab downloading 0 B of 4.0 KiB (0%)\n\
             layer sha256:0123456789ab downloading 1.0 KiB of 4.0 KiB (25%)\n\
             layer sha256:0123456789ab downloading 4.0 KiB of 4.0 KiB (100%)\n\
             layer sha256:0123456789ab unpacked\n"
        );
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
