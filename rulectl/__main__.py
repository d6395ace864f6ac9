from rulectl.cli import main

raise SystemExit(main())
