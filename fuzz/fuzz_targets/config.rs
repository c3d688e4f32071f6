//! `.conf` and `.json` config parsing: never panics; a `.conf` that parses converts to JSON
//! that parses back to the same configuration, as `overlay-network parse-config` does.

#![no_main]
#![forbid(unsafe_code)]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use overlay_transport_tcp::config::{parse_conf, parse_json};

fuzz_target!(|input: (bool, &str)| {
    let (as_json, text) = input;
    if as_json {
        let _ = parse_json(Path::new("fuzz.json"), text);
        return;
    }
    if let Ok((conf, _)) = parse_conf(Path::new("fuzz.conf"), text) {
        let json = conf.to_json();
        let (again, _) = parse_json(Path::new("fuzz.json"), &json).expect("parse-config output parses");
        assert_eq!(again.to_json(), json, "conf -> json -> conf changed the configuration");
    }
});
