//! vision_one connector (in progress)
