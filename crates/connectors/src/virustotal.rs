//! virustotal connector (in progress)
