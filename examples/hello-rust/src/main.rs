//! The wkube hello workload. Prints its arguments, its environment and a file from a mounted
//! volume, then exits. Flags make it useful for trying out pod behaviour:
//!
//!   --sleep SECS   sleep before exiting (a long-running pod)
//!   --exit CODE    exit with this code (a failing pod)
//!   --spin         loop forever without yielding (a CPU hog)
//!   --alloc MIB    allocate and touch this much memory (a memory bomb past its limit)
//!   --read PATH    print a file (volumes; or try one outside them)
//!   --tick SECS    print a line every SECS seconds, forever (for `kubectl logs -f`)

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("hello from wasm! args: {:?}", args);
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (k, v) in vars {
        println!("env {k}={v}");
    }
    let mut i = 1;
    let mut code = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--sleep" => std::thread::sleep(Duration::from_secs_f64(value.parse().unwrap_or(1.0))),
            "--exit" => code = value.parse().unwrap_or(1),
            "--spin" => spin(),
            "--alloc" => alloc(value.parse().unwrap_or(64)),
            "--read" => match std::fs::read_to_string(&value) {
                Ok(text) => println!("{value}: {}", text.trim_end()),
                Err(e) => {
                    eprintln!("cannot read {value}: {e}");
                    code = 2;
                }
            },
            "--tick" => tick(value.parse().unwrap_or(1.0)),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    std::process::exit(code);
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn alloc(mib: usize) {
    let mut blocks = Vec::new();
    for n in 0..mib {
        blocks.push(vec![n as u8; 1024 * 1024]);
    }
    println!("allocated {} MiB", blocks.len());
}

fn tick(secs: f64) -> ! {
    let mut n = 0u64;
    loop {
        println!("tick {n}");
        n += 1;
        std::thread::sleep(Duration::from_secs_f64(secs));
    }
}
