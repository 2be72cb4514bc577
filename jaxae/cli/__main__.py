from jaxae.cli import console

console()
