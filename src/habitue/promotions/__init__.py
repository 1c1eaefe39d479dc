"""Promotions at the till: price a basket with every deal, then confirm it."""
