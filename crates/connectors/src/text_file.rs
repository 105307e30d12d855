//! text_file connector (in progress)
