//! stix_file connector (in progress)
