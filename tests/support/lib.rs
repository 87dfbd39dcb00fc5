//! Support for the integration suite.
