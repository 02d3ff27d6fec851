fn main() {
    println!("netd {}", env!("CARGO_PKG_VERSION"));
}
