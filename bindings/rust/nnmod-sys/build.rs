//! Finds libnnmod for linking: NNMOD_LIB_DIR if set, else `pkg-config nnmod`
//! (PKG_CONFIG_PATH=<build>/lib/pkgconfig for a build tree, as ctest does).
//! Nothing is compiled: the declarations are committed (src/bindings.rs).
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NNMOD_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if env::var_os("CARGO_FEATURE_LINK").is_none() {
        return;
    }
    if let Some(dir) = env::var_os("NNMOD_LIB_DIR") {
        let dir = dir.to_string_lossy().into_owned();
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rustc-link-lib=dylib=nnmod");
        println!("cargo:libdir={dir}");
        return;
    }
    let out = Command::new("pkg-config").args(["--libs", "nnmod"]).output();
    let out = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "pkg-config --libs nnmod failed: {}\nInstall nnmod (cmake --install), or set \
             PKG_CONFIG_PATH=<build>/lib/pkgconfig or NNMOD_LIB_DIR=<dir of libnnmod.so>",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run pkg-config ({e}); set NNMOD_LIB_DIR=<dir of libnnmod.so>"),
    };
    for flag in out.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:libdir={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
}
