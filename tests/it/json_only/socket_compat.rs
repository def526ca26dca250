//! Runs the Node compatibility suite (tests/js, the real socket.io-client 4.8) against this build's binary.

use std::process::Command;

#[test]
fn socket_io_client_4_compatibility_suite_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js");
    assert!(
        std::path::Path::new(dir).join("node_modules/socket.io-client").exists(),
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` (scripts/test.sh does it)"
    );
    let out = Command::new("node")
        .args(["--test", "realtime.test.mjs"])
        .current_dir(dir)
        .env("FLUXSTUDIO_BIN", env!("CARGO_BIN_EXE_fluxstudio"))
        .output()
        .expect("node is installed (Node.js 20 or newer)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node --test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("# fail 0"), "{stdout}");
}
