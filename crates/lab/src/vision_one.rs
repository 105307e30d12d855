//! vision_one simulator (in progress)
