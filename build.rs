//! Generates the C header from the Rust sources into $OUT_DIR/session.h, sets the shared
//! library's soname, and with SESSION_UPDATE_HEADER=1 also rewrites the committed
//! include/session.h (`make header`).

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=SESSION_UPDATE_HEADER");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsession.so.0");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        // Only the C boundary is exported; the rest of the crate is not C API.
        .with_src(crate_dir.join("src").join("ffi").join("mod.rs"))
        .with_config(config)
        .with_after_include(version_macros())
        .generate()
        .expect("the C header can be generated from src/");
    let mut header = Vec::new();
    bindings.write(&mut header);
    let header = vendor_declarations(String::from_utf8(header).expect("cbindgen writes UTF-8"));
    std::fs::write(out_dir.join("session.h"), &header).expect("OUT_DIR is writable");
    if std::env::var("SESSION_UPDATE_HEADER").as_deref() == Ok("1") {
        std::fs::write(crate_dir.join("include").join("session.h"), &header).expect("include/ is writable");
    }
}

/// LIBSESSION_VERSION and its parts, from Cargo.toml's version.
fn version_macros() -> String {
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let part = |name: &str| std::env::var(format!("CARGO_PKG_VERSION_{name}")).expect("cargo sets the version's parts");
    format!(
        "\n/** The version of libsession this header belongs to; libsession_version() gives the loaded one's. */\n\
         #define LIBSESSION_VERSION \"{version}\"\n\
         #define LIBSESSION_VERSION_MAJOR {}\n#define LIBSESSION_VERSION_MINOR {}\n#define LIBSESSION_VERSION_PATCH {}\n",
        part("MAJOR"),
        part("MINOR"),
        part("PATCH")
    )
}

/// The vendor's declarations where cbindgen cannot write them: struct tags that code written for
/// the vendor's API names (`struct session_listener_s`), and `on_handler_error` declared without
/// a prototype, so that a handler with parameters may be assigned to it.
fn vendor_declarations(mut header: String) -> String {
    for (tag, name) in [
        ("session_listener_s", "SESSION_LISTENER_T"),
        ("session_create_callback_s", "SESSION_CREATE_CALLBACK_T"),
        ("diffusion_error_s", "DIFFUSION_ERROR_T"),
    ] {
        let end = header.find(&format!("}} {name};")).unwrap_or_else(|| panic!("the header defines {name}"));
        let start = header[..end].rfind("typedef struct {").unwrap_or_else(|| panic!("{name} is a struct"));
        header.replace_range(start..start + "typedef struct {".len(), &format!("typedef struct {tag} {{"));
    }
    let prototype = "void (*on_handler_error)(void);";
    assert!(header.contains(prototype), "the header declares on_handler_error");
    header.replace(prototype, "void (*on_handler_error)();")
}
