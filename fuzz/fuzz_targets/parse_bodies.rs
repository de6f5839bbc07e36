//! Any bytes as a request body: the JSON shapes the services accept and the error bodies they
//! produce must parse or fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::revocation::RevocationEntry;
use shared::{Claims, ErrorBody};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Claims>(data);
    let _ = serde_json::from_slice::<ErrorBody>(data);
    // Revocation messages arrive from Redis pub/sub and are parsed by every books instance.
    if let Ok(entry) = serde_json::from_slice::<RevocationEntry>(data) {
        let round_trip = serde_json::to_vec(&entry).expect("serialises");
        let again: RevocationEntry = serde_json::from_slice(&round_trip).expect("round trip");
        assert_eq!(again, entry);
    }
});
