"""The reference pipeline: a faithful stand-in for the YE/YH parts of the system under test."""
