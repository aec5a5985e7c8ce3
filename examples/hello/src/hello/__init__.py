"""A tiny package to build with kiln."""


def greeting(name: str = "world") -> str:
    return f"Hello, {name}!"


def main() -> None:
    print(greeting())
