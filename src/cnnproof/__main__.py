from cnnproof.cli import main

raise SystemExit(main())
