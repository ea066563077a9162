//! Tells the kit the target triple it is built for, so it can tell a `<target>/<triple>/`
//! folder from the target folder itself (see `service::workspace_binary`).
fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=SPARKLIO_KIT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
