"""The recipes shipped with bindiff, installed as ``bindiff.recipes``: ``bindiff train ml1m`` finds
``ml1m.yaml`` here, and ``bindiff recipes`` lists them. This file makes the folder a package."""
