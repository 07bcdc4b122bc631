"""The store: calls and scores on disk, with rollups that keep queries fast as history grows."""
