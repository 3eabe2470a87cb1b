//! The control API's command decoding (what rvsd does with a request
//! body): any bytes give a command or a JSON error, never a panic; a
//! command that decodes encodes back to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_api::Command;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = serde_json::from_slice::<Command>(data) else {
        return;
    };
    let json = serde_json::to_vec(&cmd).expect("a decoded command encodes");
    let again: Command = serde_json::from_slice(&json).expect("what we encode decodes");
    assert_eq!(again, cmd);
});
