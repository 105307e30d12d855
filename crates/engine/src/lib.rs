//! tibridge-engine
