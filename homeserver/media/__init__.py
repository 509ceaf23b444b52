"""The media repository. (being written)"""
