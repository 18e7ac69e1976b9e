//! `stranger`: a valid WASI component that is not an agent (it exports
//! `wasi:cli/run`, not `run`). Deploying it must fail with `wrong_world`.

fn main() {
    println!("I am not an agent");
}
