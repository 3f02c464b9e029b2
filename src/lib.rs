pub use xinference_core::*;
