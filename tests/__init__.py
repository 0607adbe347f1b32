"""The tests, one package per part of the code they test (tests/results/ for bench/results/,
tests/methods/ for methods/, ...); packages, so that test modules in different folders may
share a basename. Helpers shared by several test modules live in tests/helpers/ and are
imported from there; fixtures stay in tests/conftest.py."""
