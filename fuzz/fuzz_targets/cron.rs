//! Cron specs: parsing never panics, accepted periods are within 1 ms..1 day, and an
//! accepted period written back as "@every <n>ms" parses to the same value.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use overlay_core::parse_cron;

fuzz_target!(|spec: &str| {
    if let Ok(period) = parse_cron(spec) {
        assert!(period.as_millis() >= 1 && period.as_millis() <= 86_400_000);
        assert_eq!(parse_cron(&format!("@every {}ms", period.as_millis())), Ok(period));
    }
});
