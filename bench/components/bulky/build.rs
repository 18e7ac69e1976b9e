//! Generates `FUNCTIONS` distinct functions and a table that keeps them all, so
//! the component carries about 2 MB of real code to validate and compile.

use std::fmt::Write;

const FUNCTIONS: u64 = 14_500;

fn main() {
    let mut code = String::new();
    for i in 0..FUNCTIONS {
        let (a, b, c) = (i.wrapping_mul(0x9E37_79B9) | 1, i % 61 + 1, i.wrapping_mul(2_654_435_761));
        let _ = writeln!(
            code,
            "#[inline(never)] fn f{i}(x: u64) -> u64 {{ let y = x.wrapping_mul({a}).rotate_left({b}) ^ {c}; \
             if y % 3 == 0 {{ y / 3 + {i} }} else if y % 5 == 1 {{ y.wrapping_sub({c}) }} else {{ y.wrapping_add(x >> {b}) }} }}"
        );
    }
    code.push_str("pub static TABLE: &[fn(u64) -> u64] = &[");
    for i in 0..FUNCTIONS {
        let _ = write!(code, "f{i},");
    }
    code.push_str("];\n");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("generated.rs");
    std::fs::write(out, code).expect("writing generated.rs");
}
