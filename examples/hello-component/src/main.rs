//! A WASI preview2 component: Rust's wasm32-wasip2 target builds a `wasi:cli/run` command
//! component, which wkube runs through wasmtime's component model.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("hello from a wasm component! args: {args:?}");
    if let Ok(greeting) = std::env::var("GREETING") {
        println!("GREETING={greeting}");
    }
    if let Some(path) = args.iter().skip_while(|a| *a != "--read").nth(1) {
        match std::fs::read_to_string(path) {
            Ok(text) => println!("{path}: {}", text.trim_end()),
            Err(e) => eprintln!("cannot read {path}: {e}"),
        }
    }
}
