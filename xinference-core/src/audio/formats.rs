//! The container formats an upload may be in, probed as symphonia's default probe does, except
//! that an ADTS (raw AAC) stream is handed to its reader as an unseekable stream.
//!
//! Why: symphonia-codec-aac 0.5.5's ADTS reader estimates a seekable stream's length with
//! `(len - pos) - pos`, subtracting the start position twice: a sync word (`0xFFF1`, found
//! by the probe anywhere in the first megabyte) in the second half of a file makes a step of 0
//! and panics, or underflows (found by the `audio_file` fuzz target). On an unseekable stream
//! it samples the frames ahead instead, and decoding from the start needs no seeking.

use std::sync::OnceLock;
use symphonia::core::errors::Result;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
use symphonia::core::probe::{Descriptor, Instantiate, Probe};
use symphonia::default::formats::AdtsReader;

/// The probe: symphonia's default one (the formats our features enable), with ADTS read as a
/// stream. The probe takes the first registered format whose marker it meets, so ours,
/// registered first, stands in for symphonia's ADTS entry.
pub fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let mut probe = Probe::default();
        probe.register(&ADTS_AS_STREAM);
        symphonia::default::register_enabled_formats(&mut probe);
        probe
    })
}

/// symphonia's ADTS descriptor, instantiated on an unseekable view of the stream.
const ADTS_AS_STREAM: Descriptor = Descriptor {
    short_name: "aac",
    long_name: "Audio Data Transport Stream (native AAC), read as a stream",
    extensions: &["aac"],
    mime_types: &["audio/aac"],
    markers: &[&[0xff, 0xf1]],
    score: |_| 255,
    inst: Instantiate::Format(adts_as_stream),
};

/// Opens an ADTS reader over `source` seen as an unseekable stream from where it stands.
fn adts_as_stream(
    source: MediaSourceStream,
    options: &FormatOptions,
) -> Result<Box<dyn FormatReader>> {
    let stream = MediaSourceStream::new(Box::new(ReadOnlySource::new(source)), Default::default());
    Ok(Box::new(AdtsReader::try_new(stream, options)?))
}
